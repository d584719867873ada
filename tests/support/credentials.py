"""The secrets every test and bench stack is configured with (fake ones, for fakes only)."""

ADMIN_TOKEN = "test-admin-token-0123456789abcdefghij"
SECRET_KEY = "test-secret-key-for-encryption-0123456789"
LOKE_CLIENT_ID = "crm-addon"
LOKE_CLIENT_SECRET = "crm-addon-secret"
CRM_SECRET = "crm-destination-secret"
HUBSPOT_TOKEN = "pat-na1-test-hubspot-token"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
