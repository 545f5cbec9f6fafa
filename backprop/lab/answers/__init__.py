"""The answers to 2.1–2.5 and section 3, as report sections built from this run's files: the
sweeps' summaries, the cross-validated scores and the paired comparisons (metrics/comparison.json).
No I/O. Every conclusion is a sentence generated from a comparison with its interval; a
difference whose 95% interval contains 0 is stated as "no difference detected", never a ranking,
with where any difference lies and the smallest one this design detects with 80% power. Each
section ends with its answer, which is also its row of the answers table that opens the report.

One module per question (``q21`` … ``q25``, ``q3``) and the answers table (``table``); the words
they share: numbers (``wording``), settings (``settings``), a sweep's choice (``choices``), its
table (``sweep_tables``) and what its fits show about stability (``stability``).
"""
