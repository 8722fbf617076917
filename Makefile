# Two entry points for a fresh Debian 12 machine (see README.md). Both install what they need.
.PHONY: lab lab-cluster test

lab:  ## the main job: build the box, run the single-node VM lab end to end, print the report
	tools/bootstrap.sh lab
	nox -s lab_single

lab-cluster:  ## the HA lab: 3 servers + 2 workers behind the API VIP, failover drill, report
	tools/bootstrap.sh lab
	nox -s lab_cluster

test: ## lint and the unit + script + integration tests
	tools/bootstrap.sh test
	nox -s lint tests
