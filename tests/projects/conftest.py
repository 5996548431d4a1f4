"""The projects below are fixtures: the integration tests copy them and run their tests inside their own
images (with their own dependencies). This suite does not collect them."""

collect_ignore_glob = ["*"]
