"""Assets by layer: market bars and eigen scans, BLUE and GREEN daily chains, the risk layer, live hot copies."""
