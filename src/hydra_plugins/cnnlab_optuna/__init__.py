"""cnnlab's Optuna sweeper for Hydra (`hydra/sweeper=optuna`, conf/hydra/sweeper/optuna.yaml). Hydra imports every
module of this namespace at start-up, so this one stays light: the search itself loads when a sweep begins."""
