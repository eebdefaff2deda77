"""wirecap worker / wirecap merge: capture on many hosts, merge the streams live by timestamp."""
