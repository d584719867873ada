"""What every stage shares: configuration, the process's services, tasks by name, logs, metrics."""
