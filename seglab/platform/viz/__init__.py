"""Pictures drawn while training and evaluating (numpy in, ``(H, W, 3)`` uint8 RGB out; nothing logs here).

* :mod:`.panels` -- per-image panels (input | ground truth | prediction | errors; OVeNet's offsets,
  confidence and fix/break map), the offset diagnostics, which validation images to draw, ``save_png``;
* :mod:`.flowcolor` -- colour codings of dense fields (offset vectors in flow colours, confidence in viridis);
* :mod:`.charts` -- matplotlib charts evaluators return as pictures (trimap curve, embeddings, bars, curves).

The training loop's pictures hook logs what these return; the comparison's own plots live in
:mod:`seglab.platform.report.plots`.
"""
