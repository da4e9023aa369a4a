"""What every process running Flower shares: its environment (``environment``) and the tools
that find and end process trees (``processes``). Imports no other package of the project."""
