"""The report's colours and fonts, shared by the charts and the page so that both look like one document."""

INK = "#1e293b"  # text
SUBTLE = "#94a3b8"  # axis lines, secondary text
GRID = "#e2e8f0"
NEUTRAL = "#f1f5f9"  # cells without a significant difference
ACCENT = "#0f766e"  # the best model and the models tied with it
MUTED = "#94a3b8"  # models significantly below the best
DIVERGING = "redblue"  # pairwise differences: red = row model worse, blue = row model better
FONT = "Helvetica Neue, Helvetica, Arial, Liberation Sans, DejaVu Sans, sans-serif"
