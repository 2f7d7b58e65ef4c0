"""Images through filters: feature maps, top patches and attribution (what drives a filter)."""
