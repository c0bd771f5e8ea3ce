"""Builds what AWS runs: chalice's CloudFormation template and Lambda package, with bytecode.

``python -m deploy OUT`` is ``chalice package`` with the merge template, followed by the steps
chalice does not take (see ``deploy.bytecode``).
"""
