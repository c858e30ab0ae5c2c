"""Hyperparameter search on Optuna's ask-and-tell interface, for `hydra/sweeper=optuna` (the Hydra plugin in
`hydra_plugins.cnnlab_optuna` is a thin shell around `worker.run_worker`).

Why cnnlab carries its own sweeper: Hydra's `hydra-optuna-sweeper` (1.3.0, the newest on PyPI) still requires
`optuna<3`, a 2021 Optuna without the journal storage, current dashboards or SQLAlchemy 2, and it runs each process
as its own search. Here any number of workers started independently share one study:
  space     the search space: Hydra's sweep syntax (`choice`, `interval`, `range`, `tag(log, ...)`) -> distributions
  storage   SQLite, a database URL (PostgreSQL, MySQL) or a journal file -> an Optuna storage
  ledger    the study's bookkeeping: the trial budget, duplicates, workers' heartbeats, trials lost with a worker
  worker    one worker's loop: ask, launch the jobs, tell
  job       the job's side: report each epoch's value, ask whether to prune (`cnnlab.run.callbacks.pruning`)
"""
