"""Development and test support: throwaway servers. Not used by the product at run time."""
