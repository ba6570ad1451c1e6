.PHONY: sdk-check
## The simulator through SaladCloud's official Python SDK (PyPI salad-cloud-sdk, pinned to the
## spec's version): a venv under .scratch/ (reused when present), then the one test that drives
## a queue, a connected group and a job with it.
SDK_VERSION ?= 0.9.0a17
SDK_VENV ?= .scratch/sdk-venv
sdk-check:
	@test -x $(SDK_VENV)/bin/python || python3 -m venv $(SDK_VENV)
	@$(SDK_VENV)/bin/python -c "import salad_cloud_sdk" 2>/dev/null || $(SDK_VENV)/bin/pip install -q "salad-cloud-sdk==$(SDK_VERSION)"
	SALAD_SDK_PYTHON=$(abspath $(SDK_VENV))/bin/python $(CARGO) test -q -p saladcloud-sim --test official_sdk -- --nocapture
