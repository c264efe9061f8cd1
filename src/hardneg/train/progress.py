"""What a ``transformers`` trainer shows while it trains: a progress bar with the latest loss, never raw log
dicts on stdout (hardneg keeps the loss log in its own summaries and reports)."""

from __future__ import annotations


def show_loss_in_bar(trainer, show_progress: bool) -> None:
    """Replace ``trainer``'s printing callbacks: with ``show_progress`` its bar shows the latest loss; without,
    nothing prints (transformers would print every log dict, ``{'loss': ...}``, as a line of its own)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class LossInBar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{logs['loss']:.4g}", refresh=False)

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if show_progress:
        trainer.add_callback(LossInBar)
