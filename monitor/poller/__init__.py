"""The polling shell: rate budget, dispatcher, result processing and the scheduler."""
