"""The RMT study: the plans (study_plan*.json), the resumable runner (reproduce, study_window), the reports it
writes (study_report and the modules it calls), and the one-off studies beside it (regime_map, demo_draws,
choose_demo_lr, federated_study, opacus_peer: the Opacus peer arm)."""
