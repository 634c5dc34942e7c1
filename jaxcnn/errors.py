"""The one exception type for mistakes a user can fix (a bad config, a missing dataset).

Entry points print such an error as a single line and exit non-zero, with no traceback.
"""


class UserError(Exception):
  pass
