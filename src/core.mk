# The core of blinkhook: every module but the two main()s.  One list, built
# into libblinkhook.a by the Makefile and by tests/fuzz/fuzz.mk; the daemon,
# the CLI, the unit tests and the fuzz targets link that library.
CORE := util log config credentials netaddr json job joblog joblog-compact queue secret callback scheduler meraki meraki-answers httpd \
	lifecycle ledger intake dispatch resolve endpoint pgschema pgstore
