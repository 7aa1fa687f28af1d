"""biobench: benchmark frozen vision backbones on biology tasks."""
