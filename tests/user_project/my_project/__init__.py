"""A user's own project beside cnnlab: its own DataModule, backbone and model class, and its own conf/."""
