"""The ``transformers`` callback that runs a :class:`~hardneg.train.refresh.Refresher` during training and
saves the negatives in use with every checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hardneg.errors import HardnegError
from hardneg.train.refresh import NEGATIVES_STATE, Refresher, find_dense


def check_miner_follows(miner, model) -> Any:
    """``miner``'s dense retriever, after checking its encoder wraps ``model`` itself (so a refresh mines with
    the weights being trained, not a copy)."""
    dense = find_dense(miner.retriever)
    wraps = getattr(dense.encoder, "wraps", None)
    if wraps is None or not wraps(model):
        raise HardnegError(
            "The miner's encoder does not wrap the model being trained, so a refresh would mine with the old "
            "weights. Build it from the model object: SentenceTransformerEncoder(model) (see hardneg.train.trainer)."
        )
    return dense


def make_refresh_callback(refresher: Refresher | None, pool, every: int | None, *, eval_at_start: bool = True):
    """A transformers ``TrainerCallback`` that runs ``refresher`` and saves pool state with checkpoints.

    Without a refresher (static negatives) it still saves the negatives in use with
    each checkpoint, so a resumed run trains on the same ones.
    """
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    class RefreshCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if refresher is not None and eval_at_start and state.global_step == 0:
                _in_eval(model, lambda: refresher.evaluate(0, "start"))

        def on_step_end(self, args, state, control, model=None, **kwargs):
            step = state.global_step
            if refresher is None or not every:
                return
            due = step % every == 0 and step < state.max_steps
            if refresher.config.asynchronous:
                refresher.poll(step, wait=due)  # swap in a finished refresh; the next one may not overtake it
                if due:
                    refresher.start_async(step)
            elif due:
                _in_eval(model, lambda: refresher.refresh(step))

        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            if refresher is not None:
                refresher.save(folder)
            else:
                pool.save_negatives(folder / NEGATIVES_STATE)

        def on_train_end(self, args, state, control, model=None, **kwargs):
            if refresher is not None:
                refresher.cancel(state.global_step)
            if refresher is not None and refresher.dev is not None:
                _in_eval(model, lambda: refresher.evaluate(state.global_step, "end"))

    return RefreshCallback()


def _in_eval(model, fn):
    """Run ``fn`` with the model in eval mode (no dropout), then restore training mode."""
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    try:
        return fn()
    finally:
        if model is not None and was_training:
            model.train()
