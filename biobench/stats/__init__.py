"""Statistics behind every reported number: metrics (`metrics`), the paired bootstrap and the overall score
(`bootstrap`), and pairwise comparisons, ranks and ties with the best (`comparisons`). The module docstrings state
the formulas; the report and the README quote them."""
