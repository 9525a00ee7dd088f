from sweepctl.cli.main import entry

entry()
