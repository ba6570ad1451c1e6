.PHONY: demo
## The whole flow on this machine in under 3 minutes: simulated SaladCloud, real engine, image
## builder and registry (Debian docker-registry, installed when missing). Output in demo/out/.
demo:
	@scripts/demo.sh
