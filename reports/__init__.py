"""Figures and documents (HTML, Markdown) built only from saved traces and verdicts."""

import matplotlib

matplotlib.use("Agg")  # before any pyplot import: reports render on machines without a display
