"""Reading CronWorkflows: wire models, documents, files and their limits."""
