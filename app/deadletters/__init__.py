"""Dead letters: what could not be applied or delivered, for a person to see and replay."""
