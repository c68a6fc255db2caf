"""Reports: tables and run comparison pages with plots."""
