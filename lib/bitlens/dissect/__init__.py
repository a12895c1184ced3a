"""Network Dissection of any layer on a Broden-format dataset: the IBC fork of NetDissect-Lite, vectorised.

One idea per module: `activations` (the activation cache and the images that excite a unit most), `tally`
(thresholds, masks, IoU tallies), `labels` (each unit's label, bit groups, planted-concept verdicts),
`placement` (where a bit's masks sit), `run` (`dissect()`: all of them on one model) and `__main__` (the CLI).

With `reference=True` (the default) every rule follows the fork's code (see docs/dissection.md):

1. Images with no label in the dissected categories are dropped (thresholds and tallies alike).
2. Activations of the layer for every image are cached (float16 or float32 memmap, resumable). Preprocessing
   `caffe` (the fork's): subtract the Caffe mean R 123.68, G 116.779, B 103.939 from 0–255 pixels, divide by
   255 × 0.224; `torchvision`: ToTensor then per-channel ImageNet mean/std (for models trained that way).
3. Per unit, the threshold is the top-`quantile` (0.5%) activation over all positions of all kept images — exact
   (np.quantile, linear interpolation); the fork reads it from a streaming sketch.
4. Per image, each unit's map is upsampled bilinearly to the mask size (align_corners=False, the pixel-centre
   convention of the PIL resize the fork calls) and thresholded: M = map > threshold.
5. Tallies: |M ∩ L| per label (an image-level label counts all of |M|), |L| per label (image-level: every pixel),
   and |M|_c per category c: an image adds |M| to c only when M overlaps at least one pixel whose label has
   primary category c, or the image has an image-level label of c. (`reference=False`: every image that has
   any label of c adds |M|.) IoU = ∩ / (|M|_c + |L| − ∩), a label scored under its primary category among the
   dissected ones.
6. A unit's label is its best label over all categories; a unit whose best IoU is 0 is unlabelled (empty label).
   It is interpretable if IoU ≥ the threshold (0.04 upstream, 0.01 in the IBC fork).
"""
