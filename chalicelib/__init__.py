"""keyward's service code, in floors that only import downward (docs/architecture.md):

``base`` → ``ceremony`` → ``counters`` → ``access`` → ``keys`` → ``org`` → ``background`` | ``delivery`` → ``api``.
"""
