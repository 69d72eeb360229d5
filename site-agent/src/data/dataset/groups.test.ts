import { describe, expect, it } from 'vitest';
import { assignGroups, type GroupKeys } from './groups.js';
import { patientKeyOf } from '../dicom/patient-key.js';

const A = patientKeyOf('MRN-A');
const B = patientKeyOf('MRN-B');

describe('assignGroups', () => {
  const keys: GroupKeys[] = [
    { patientKey: A, studyInstanceUid: '1.1', imageKey: 'a1' },
    { patientKey: A, studyInstanceUid: '1.2', imageKey: 'a2' },
    { patientKey: B, studyInstanceUid: '2.1', imageKey: 'b1' },
    { patientKey: B, studyInstanceUid: '2.1', imageKey: 'b2' },
    // No Patient ID: grouped by study, and through study 1.2 with patient A.
    { studyInstanceUid: '1.2', imageKey: 'a3' },
    { studyInstanceUid: '9.9', imageKey: 'x1' },
    { studyInstanceUid: '9.9', imageKey: 'x2' },
    // Neither: each image alone.
    { imageKey: 'png1' },
    { imageKey: 'png2' },
  ];

  it('joins images by Patient ID, else by Study Instance UID, else leaves them alone', () => {
    const g = Array.from(assignGroups(keys));
    expect(g[0]).toBe(g[1]);
    expect(g[4]).toBe(g[0]);
    expect(g[2]).toBe(g[3]);
    expect(g[5]).toBe(g[6]);
    expect(new Set([g[0], g[2], g[5], g[7], g[8]]).size).toBe(5);
  });

  it('names each group the same whatever the order of the images', () => {
    const byImage = (list: GroupKeys[]): Map<string, number> => {
      const ids = assignGroups(list);
      return new Map(list.map((k, i) => [k.imageKey, ids[i] as number]));
    };
    const reference = byImage(keys);
    expect(byImage([...keys].reverse())).toEqual(reference);
    expect(byImage([keys[4], keys[8], keys[1], keys[6], keys[0], keys[3], keys[7], keys[2], keys[5]] as GroupKeys[])).toEqual(reference);
    // A patient's id does not depend on which other patients the site has.
    expect(byImage(keys.slice(0, 2)).get('a1')).toBe(reference.get('a1'));
  });

  it('returns nothing for nothing', () => {
    expect(assignGroups([])).toEqual(new Uint32Array(0));
  });
});
