"""The class label that marks an image without a class: 99999, as in the IBC release's list files (the official
trainer skips it in every class term, the Matlab evaluation keeps such queries in its means)."""

MISSING_LABEL = 99999
