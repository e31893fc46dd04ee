"""The hook manager (``src/hm``): hook events to HM_MAD, results into the hook log."""
