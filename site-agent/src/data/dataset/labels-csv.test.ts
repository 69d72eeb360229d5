import { describe, expect, it } from 'vitest';
import { LabelsCsvError, parseLabelsCsv } from './labels-csv.js';

function issuesOf(text: string): Array<{ line: number; column: string | undefined; message: string }> {
  try {
    parseLabelsCsv(text, 'labels.csv');
  } catch (error) {
    if (error instanceof LabelsCsvError) return error.issues.map((i) => ({ ...i }));
    throw error;
  }
  throw new Error('expected LabelsCsvError');
}

describe('parseLabelsCsv', () => {
  it('parses rows, quoted fields, CRLF, a BOM and trailing blank lines', () => {
    const text = '\uFEFFfile,label\r\nimages/a.dcm,normal\r\n"images/b,c.dcm",lesion\r\n  images\\\\sub\\\\d.dcm , lesion \r\n\r\n';
    expect(parseLabelsCsv(text)).toEqual({
      keyedBy: 'file',
      rows: [
        { key: 'images/a.dcm', label: 'normal', line: 2 },
        { key: 'images/b,c.dcm', label: 'lesion', line: 3 },
        { key: 'images/sub/d.dcm', label: 'lesion', line: 4 },
      ],
    });
  });

  it('accepts columns in any order plus extra columns', () => {
    expect(parseLabelsCsv('label,site,file\nnormal,a,x.dcm\n')).toEqual({ keyedBy: 'file', rows: [{ key: 'x.dcm', label: 'normal', line: 2 }] });
  });

  it('names the line and column of each bad row', () => {
    const issues = issuesOf('file,label\nok.dcm,normal\n,lesion\nb.dcm,\n../escape.dcm,normal\n/abs.dcm,normal\nok.dcm,lesion\nx.dcm,normal,extra\n');
    expect(issues).toEqual([
      { line: 3, column: 'file', message: 'must not be empty' },
      { line: 4, column: 'label', message: 'must not be empty' },
      { line: 5, column: 'file', message: 'must not point outside the data directory' },
      { line: 6, column: 'file', message: 'must be a path relative to the data directory' },
      { line: 7, column: 'file', message: '"ok.dcm" is already labelled on line 2' },
      { line: 8, column: undefined, message: 'expected 2 fields, found 3' },
    ]);
  });

  it('counts lines inside quoted multi-line fields', () => {
    const issues = issuesOf('file,label\n"a\nb.dcm",normal\nc.dcm,\n');
    expect(issues).toEqual([{ line: 4, column: 'label', message: 'must not be empty' }]);
  });

  it('rejects a missing header, an empty file and an unterminated quote', () => {
    expect(issuesOf('path,class\na.dcm,normal\n')[0]?.message).toMatch(/header must name a "label" column and one key column/);
    expect(issuesOf('file,sop_instance_uid,label\na.dcm,1.2,normal\n')[0]?.message).toBe('header has key columns "file" and "sop_instance_uid"; a labels file is keyed one way only');
    expect(issuesOf('')[0]?.message).toMatch(/empty/);
    expect(issuesOf('file,label\n"a.dcm,normal\n')).toEqual([{ line: 2, column: undefined, message: 'quoted field is never closed' }]);
  });

  it('puts line numbers in the error message', () => {
    expect(() => parseLabelsCsv('file,label\na.dcm,\n', 'site/labels.csv')).toThrow(/site\/labels\.csv: invalid labels CSV\n {2}line 2, column "label": must not be empty/);
  });

  it('keys rows by SOP Instance UID or Study Instance UID, named by the header', () => {
    expect(parseLabelsCsv('SOP_Instance_UID,label\n1.2.840.113619.2.55.3,lesion\n 1.3.6.1.4.1.9328 ,normal\n')).toEqual({
      keyedBy: 'sop_instance_uid',
      rows: [
        { key: '1.2.840.113619.2.55.3', label: 'lesion', line: 2 },
        { key: '1.3.6.1.4.1.9328', label: 'normal', line: 3 },
      ],
    });
    expect(parseLabelsCsv('label,study_instance_uid\nnormal,1.2.3\n').keyedBy).toBe('study_instance_uid');
  });

  it('keys rows by Series Instance UID, named by the header', () => {
    expect(parseLabelsCsv('Series_Instance_UID,label,note\n1.2.840.113619.2.55.3.7,lesion,CT chest\n 1.3.6.1.4.1.9328.2 ,normal,\n')).toEqual({
      keyedBy: 'series_instance_uid',
      rows: [
        { key: '1.2.840.113619.2.55.3.7', label: 'lesion', line: 2 },
        { key: '1.3.6.1.4.1.9328.2', label: 'normal', line: 3 },
      ],
    });
    // One key column only: a series file that also names its study is ambiguous.
    expect(issuesOf('series_instance_uid,study_instance_uid,label\n1.2.3.4,1.2.3,normal\n')[0]?.message).toBe(
      'header has key columns "series_instance_uid" and "study_instance_uid"; a labels file is keyed one way only',
    );
    expect(issuesOf('series,label\n1.2.3.4,normal\n')[0]?.message).toMatch(/"series_instance_uid"/);
  });

  it('refuses values that are not UIDs, and repeated UIDs, naming line and column', () => {
    expect(issuesOf(`study_instance_uid,label\n1.2.3,normal\nimages/a.dcm,lesion\n,lesion\n${'1.'.repeat(40)}1,normal\n1.2.3,lesion\n`)).toEqual([
      { line: 3, column: 'study_instance_uid', message: 'must be a DICOM UID: digits separated by dots' },
      { line: 4, column: 'study_instance_uid', message: 'must not be empty' },
      { line: 5, column: 'study_instance_uid', message: 'must be a DICOM UID of at most 64 characters' },
      { line: 6, column: 'study_instance_uid', message: '"1.2.3" is already labelled on line 2' },
    ]);
    expect(issuesOf('label,series_instance_uid\nnormal,1.2.3.4\nlesion,1.2.3.x\nlesion,1.2.3.4\n')).toEqual([
      { line: 3, column: 'series_instance_uid', message: 'must be a DICOM UID: digits separated by dots' },
      { line: 4, column: 'series_instance_uid', message: '"1.2.3.4" is already labelled on line 2' },
    ]);
    expect(() => parseLabelsCsv('series_instance_uid,label\nCT-0001,normal\n', 'site/labels.csv')).toThrow(
      /line 2, column "series_instance_uid": must be a DICOM UID/,
    );
  });
});
