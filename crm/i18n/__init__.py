"""What people read, in their language: message catalogs (zh_CN and English), the names of
the codes the records carry (stages, dispositions, languages, ...), and phrases built from
call steps. English is the source language (the msgids); ``locales/<locale>/LC_MESSAGES/``
holds the gettext catalogs, one ``.po`` file per part of the interface."""
