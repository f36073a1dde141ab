"""ROS 2 over Cyclone DDS: the message types, the test peer and the latency benchmark."""
