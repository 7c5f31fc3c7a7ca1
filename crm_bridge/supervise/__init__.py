"""Listen, whisper, barge: a supervisor's own phone rung into an agent's call.

``domain`` decides who may supervise which call (role, supervised queues, one listener per
call); ``service`` keeps the sessions going on and rings the supervisor's phone into the
dialplan context ``callbridge-supervise`` (ChanSpy); ``routes`` is its web surface, used by the
wallboard, the live call page and its own page. Which queues a supervisor supervises is the
``users.supervised_queues`` column, set on the admin users page.
"""
