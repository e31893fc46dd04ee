"""``one.host.*``"""
