"""Scheduled actions: their pool and the ScheduledActionManager (``src/sam``)."""
