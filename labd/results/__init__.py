"""Results: metrics computed by the lab from the raw samples agents upload, and grading against criteria."""
