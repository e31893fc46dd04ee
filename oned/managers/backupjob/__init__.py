"""Backup jobs: the VM links and the runs of ``ScheduledActionManager::backup_jobs``."""
