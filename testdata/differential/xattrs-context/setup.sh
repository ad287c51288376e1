echo t > tagged && setfattr -n user.note -v hello tagged
