"""The one AMI client every part of the hotline uses, and the AMI wire format."""
