"""Analysis of models and run folders: the init health report (diagnose) and sweep summaries with plots."""
