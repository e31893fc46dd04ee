"""The scheduler: SchedulerManager (SCHED_MAD), PlanManager, matching and the rank placer."""
