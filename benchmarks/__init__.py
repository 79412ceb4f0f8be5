"""asv benchmark suites for fastbp (see asv.conf.json at the repository root)."""
