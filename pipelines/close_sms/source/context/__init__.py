"""The context SMS point to: users, lead statuses, SMS templates, phone numbers, and the leads and
contacts the SMS name, each in its own table of the same dataset."""
