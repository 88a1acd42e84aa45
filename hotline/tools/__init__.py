"""Tools that drive a real hotline on this machine (hotline demo-call, the benches, the tests):
the SIPp driver and its scenarios, and settings for a throwaway test bed. The service never
imports them."""
