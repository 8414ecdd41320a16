"""The run layer: a training run from its settings to its folder.

    config      TrainConfig, the run's settings (the objective's own knobs live with it)
    plan        RunPlan: every choice made before the first step, with its reasons
    folder      RunFolder and AdaptedFolder: the only code that knows a run's file names
    checkpoint  verified, checksummed checkpoints that survive a crash
    loop        the training loop: steps, logs, checkpoints, budget
    judge       the monitor (map, collapse meter, kNN, few-label probe) and the best-encoder rule
    train       train(): checks, plan, build, loop; the generator the CLI and the app run

Importing this package costs no torch: folder and config are read before the engine loads.
"""
