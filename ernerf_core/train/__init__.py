"""Training: subject dataset, losses, error map, trainer, checkpoints.

- ``dataset.SubjectDataset``: one split of a subject folder (poses, intrinsics, audio
  windows, eye, backgrounds, torso images, lips/face rectangles), frames kept compressed
- ``trainer.Trainer``: AdamW + schedule + EMA + checkpoints/resume + CSV log + validation,
  shared by every training stage; ``checkpoint``: the checkpoint files
- ``losses``, ``error_map.ErrorMap``, ``sampling.PixelSampler``: what a step uses
- ``head.train_head`` / ``lips.finetune_lips``: the head stages (``head_cli``: their commands)
"""
