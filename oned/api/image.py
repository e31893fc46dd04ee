"""``one.image.*``"""
