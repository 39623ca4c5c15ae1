"""Design-space exploration and the hardware-cost data set (docs/explore.md).

`record.py` says what one measured configuration is; `space`, `measure`, `runner` and
`search` produce records (`celine explore`); `db`, `estimator` and `plot` keep and query
them (`celine db`).
"""
