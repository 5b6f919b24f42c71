"""A training run: its settings, its folder, its checkpoint, its callbacks, its trainer.

    config.py      TrainConfig (every flag), saved_config, the resume rules
    folder.py      RunFolder: what a run folder holds, and where; its lock
    checkpoint.py  RunCheckpoint: the backup/ a killed run resumes from
    callbacks.py   grids, history, timing, best model, NaN stop, TensorBoard
    trainer.py     train_and_evaluate = prepare + fit + finish
"""
