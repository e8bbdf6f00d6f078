"""Third-party messages that carry no action for a vlmrm user, filtered one by one.

Each filter names the message it drops (and, for warnings, its category): anything else the
libraries say still shows. Nothing here imports the libraries it quiets.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings

#: (message prefix, category) of Python warnings to drop. The prefix is literal (it also
#: goes to ``sys.warnoptions``, whose ``-W`` message field is not a regex) and is matched at
#: the start of the message.
WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    # TorchRL, when a loss has target parameters: vlmrm steps its own SoftUpdate.
    ("No target network updater has been associated with this loss module", UserWarning),
)
#: Lines of Lightning's rank-zero loggers to drop: tips, the end-of-fit note and the
#: accelerator inventory ("GPU available: False, used: False", ...); a GPU left unused still
#: gets Lightning's own warning with its fix.
LIGHTNING_LINES = ("💡 Tip", "`Trainer.fit` stopped", "GPU available:", "TPU available:",
                   "HPU available:", "IPU available:")
LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero",
                     "lightning.fabric.utilities.rank_zero")
#: Root-logger messages to drop (open_clip logs through the root logger). With
#: reward.pretrained=false vlmrm says itself that the weights are random.
ROOT_MESSAGES = ("No pretrained weights loaded for model",)


def quiet_third_party() -> None:
    """Install the filters in this process and in the processes it spawns."""
    for prefix, category in WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(prefix), category=category)
        # multiprocessing's spawn passes sys.warnoptions to each child as -W options, so env
        # workers and the collector process drop the same warnings from their first line on.
        option = f"ignore:{prefix}:{category.__name__}"
        if option not in sys.warnoptions:
            sys.warnoptions.append(option)
    # Lightning on vlmrm's single-process data source (batches come from its collector), and
    # a deprecation inside PyTorch's pytree raised from library code.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*treespec, LeafSpec.*")
    if "RL_LOGGING_LEVEL" not in os.environ:
        logging.getLogger("torchrl").setLevel(logging.WARNING)
    for name in LIGHTNING_LOGGERS:
        _add_once(logging.getLogger(name), _drop_lightning_chatter)
    _add_once(logging.getLogger(), _drop_root_chatter)


def _add_once(logger: logging.Logger, drop) -> None:
    if drop not in logger.filters:
        logger.addFilter(drop)


def _drop_lightning_chatter(record: logging.LogRecord) -> bool:
    text = record.getMessage()
    return not any(line in text for line in LIGHTNING_LINES)


def _drop_root_chatter(record: logging.LogRecord) -> bool:
    text = record.getMessage()
    return not any(text.startswith(message) for message in ROOT_MESSAGES)
