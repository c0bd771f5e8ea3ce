"""keyward's local development stack: a stand-in IdP, DynamoDB on moto, tables and demo data.

Dev tooling only, never packaged into the Lambda; unlike ``chalicelib`` it may read and set
``os.environ``.
"""
