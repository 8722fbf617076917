# Two entry points for a fresh Debian 12 machine (see README.md). Both install what they need.
.PHONY: lab lab-cluster lab-airgap lab-day2 test

lab:  ## the main job: build the box, run the single-node VM lab end to end, print the report
	tools/bootstrap.sh lab
	nox -s lab_single

lab-cluster:  ## the HA lab: 3 servers + 2 workers behind the API VIP, failover drill, report
	tools/bootstrap.sh lab
	nox -s lab_cluster

lab-day2:  ## the day-2 lab: doctor + fault drill, backup/restore, uninstall leaves the host as it was
	tools/bootstrap.sh lab
	nox -s lab_day2

lab-airgap:  ## the air-gap VM lab (bastion + node, no route out); run after the other labs
	tools/bootstrap.sh lab
	nox -s lab_airgap

test: ## lint, the unit + script + integration tests, and the handbook build (mkdocs --strict)
	tools/bootstrap.sh test
	nox -s lint tests docs
